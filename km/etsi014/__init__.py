"""km/etsi014"""
