"""Ingestion: loading files into documents and splitting documents into nodes."""
