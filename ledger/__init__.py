"""The risk core: balances, holds, settlement and fees of one account shard. Sans-I/O."""
