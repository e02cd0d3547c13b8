"""Shared vocabulary of ptsed: errors and small data types used by every stage."""
