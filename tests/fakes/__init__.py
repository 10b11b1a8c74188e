"""Test doubles of outside services that behave as the real ones do on the wire."""
