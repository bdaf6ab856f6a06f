"""handoffd.replication"""
