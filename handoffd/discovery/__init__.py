"""handoffd.discovery"""
