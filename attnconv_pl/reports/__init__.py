"""Figures and reports of probed dynamics."""
