"""Delivery providers behind one small protocol; the factory picks one per recipient."""
