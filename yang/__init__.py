"""yang"""
