"""The worker daemon and its infrastructure backends. Imports only the SDK and the stubs."""
