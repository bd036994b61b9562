/* Ids made by mixing 64-bit values (names in common.h, code objects in pystacks.h). */
#ifndef PYBPFTRACE_HASH_H
#define PYBPFTRACE_HASH_H

#include <linux/types.h>

/* One step of a multiplicative hash (the golden ratio's constant, then a shift). */
static __always_inline __u64 mix(__u64 hash, __u64 value)
{
	hash = (hash ^ value) * 0x9E3779B97F4A7C15ULL;
	return hash ^ (hash >> 29);
}

#endif
