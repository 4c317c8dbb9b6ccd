"""sscard."""
