"""Bridges to engines that run nerx at scale; each needs its optional extra."""
