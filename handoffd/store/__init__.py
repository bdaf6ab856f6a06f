"""handoffd.store"""
