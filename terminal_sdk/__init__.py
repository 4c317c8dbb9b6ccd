"""terminal_sdk."""
