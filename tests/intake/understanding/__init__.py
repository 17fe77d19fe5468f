"""Tests of the understanding engines and red-flag screening."""
