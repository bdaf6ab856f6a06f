"""handoffd.cli"""
