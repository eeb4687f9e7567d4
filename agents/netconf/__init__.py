"""agents/netconf"""
