"""One module per view of the app: its figure builders and its handlers side by side."""
