"""The user's side: the decorator, the client, outputs, bundles. Imports nothing of the servers."""
