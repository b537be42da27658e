"""The `dbos` command line: operates the system tables directly, never importing the app."""
