"""Certificates orun gets itself: ACME accounts, orders and renewals (see manager.py)."""
