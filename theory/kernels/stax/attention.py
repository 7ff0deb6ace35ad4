"""Attention layers: GlobalSelfAttention (Hron et al. 2020)."""

from __future__ import annotations

__all__: list[str] = []
