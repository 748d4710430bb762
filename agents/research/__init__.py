"""Outbound research: what is known and can be read about a prospect, and an opener grounded in
it, stored as a draft for a person to approve. Nothing here sends anything to a prospect."""
