"""Value types and pure helpers shared by every layer (the base, beside settings): money, the
canonical names of a request, phone numbers as shown to people."""
