"""km/node_link"""
