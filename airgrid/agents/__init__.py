"""Thin Faust agents, one module per stage; each calls pure functions in ``airgrid.domain``."""
