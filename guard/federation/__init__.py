"""What replicas share through Redis: leased global buckets, membership, quarantine, signed
policy bundles and endpoint health; each degrades to local state when Redis is gone."""
