/* The `samples` ring: stacks the frame walker read, sent as they are done (sampler.h's ticks,
 * event_stacks.h's events, frame_events.h's first stack of each thread). */
#ifndef PYBPFTRACE_SAMPLES_H
#define PYBPFTRACE_SAMPLES_H

#include "common.h"

BPF_RINGBUF_OUTPUT(samples, EVENTS_PAGES); /* the stacks: --buffer-size */

/* Only the frames the walk found are sent. */
static __always_inline void send_sample(struct sample_event *sample)
{
	__u32 depth = sample->depth;
	if (depth > SAMPLE_FRAMES_MAX)
		depth = SAMPLE_FRAMES_MAX;
	if (samples.ringbuf_output(sample, offsetof(struct sample_event, frames) + depth * sizeof(struct sample_frame), 0))
		count(COUNTER_EVENTS_LOST);
}

#endif
