"""handoffd.scheduler"""
