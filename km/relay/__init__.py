"""km/relay"""
