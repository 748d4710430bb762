"""Channel adapters: each turns its protocol into our messages and delivers ours back."""
