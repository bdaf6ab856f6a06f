"""handoffd.worker"""
