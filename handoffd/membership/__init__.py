"""handoffd.membership"""
