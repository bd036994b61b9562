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

/* One character read by one pattern. A `*` keeps its position on any character and lets the
 * position after it start (no two stars are adjacent: user space merges them), so one shift
 * per character follows every way to match. */
static __always_inline __u64 glob_step(const struct glob *glob, __u64 state, unsigned char c)
{
	state = ((state & glob->steps[c]) << 1) | (state & glob->stars);
	return state | ((state & glob->stars) << 1);
}

/* Whether the NUL-terminated text (of at most STRING_MAX bytes) matches any of the GLOBS_MAX
 * patterns (an unused one is all zeros: its state is 0 from the start, and never matches).
 * Every pattern reads each character in the same pass, without a branch of its own: the one
 * loop has the only branches, and its exits all lead to the same few instructions. So the
 * verifier walks it once, however clang arranges it. (A loop per pattern, each leaving at
 * any character, made LLVM 19's code defeat the verifier's pruning: over a million
 * instructions walked.) */
static __always_inline int globs_match(const struct glob *const *globs, const char *text)
{
	__u64 state[GLOBS_MAX];
	__u64 alive = 0;
#pragma unroll
	for (int k = 0; k < GLOBS_MAX; k++) {
		state[k] = globs[k]->start;
		alive |= state[k];
	}
#pragma clang loop unroll(disable)
	for (int i = 0; i < STRING_MAX && alive; i++) {
		unsigned char c = text[i];
		if (!c)
			break;
		alive = 0;
#pragma unroll
		for (int k = 0; k < GLOBS_MAX; k++) {
			state[k] = glob_step(globs[k], state[k], c);
			alive |= state[k];
		}
	}
	__u64 accepted = 0;
#pragma unroll
	for (int k = 0; k < GLOBS_MAX; k++)
		accepted |= state[k] & globs[k]->accept;
	return accepted != 0;
}

#endif
