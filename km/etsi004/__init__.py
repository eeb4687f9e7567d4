"""km/etsi004"""
