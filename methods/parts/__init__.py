"""Shared building blocks of the methods: the 2D-TAN proposal map, encoders, fusion and losses."""
