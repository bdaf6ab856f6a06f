"""handoffd.transport"""
