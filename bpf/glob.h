/* Glob patterns (`*`, `?`) matched in the kernel. User space compiles each pattern
 * (pybpftrace/globs.py) into the tables of a bit-parallel automaton: bit i of the state says
 * "the first i pattern characters can match what was read so far". Matching is one pass over
 * the text, a few operations per character, so its cost is bounded by the text's length
 * whatever the pattern: no backtracking for the verifier to walk through. */
#ifndef PYBPFTRACE_GLOB_H
#define PYBPFTRACE_GLOB_H

#include "events.h"

#define GLOB_CHARS 256

struct glob {
	__u64 start;              /* the state before any character: bit 0, and past leading stars */
	__u64 stars;              /* positions holding a `*` */
	__u64 accept;             /* the position past the pattern's end */
	__u64 steps[GLOB_CHARS];  /* positions holding a `?` or this character */
};

/* Whether the NUL-terminated text (of at most STRING_MAX bytes) matches. A `*` keeps its
 * position on any character and lets the position after it start (no two stars are adjacent:
 * user space merges them), so one shift per character follows every way to match. The loop
 * is not unrolled: the verifier walks it once per pattern either way, and unrolled it would
 * only make the program bigger. */
static __always_inline int glob_match(const struct glob *glob, const char *text)
{
	__u64 state = glob->start;
#pragma clang loop unroll(disable)
	for (int i = 0; i < STRING_MAX && state; i++) {
		unsigned char c = text[i];
		if (!c)
			break;
		state = ((state & glob->steps[c]) << 1) | (state & glob->stars);
		state |= (state & glob->stars) << 1;
	}
	return (state & glob->accept) != 0;
}

#endif
