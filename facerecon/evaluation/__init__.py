"""Measuring facerecon: data sets with ground truth, metrics, and peers run side by side.

Uses the core package; the core never imports this subpackage.
"""
