"""Who is calling and what they may do: bearer tokens and certificates (authn, jwks), checked
impersonation, and edge authorization by cached SubjectAccessReviews (authz)."""
