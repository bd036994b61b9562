/* pybpftrace dump: every thread's Python stack now (dump.h), read while the target runs on. */
#include <uapi/linux/bpf.h>
#include "events.h"

#ifndef EVENTS_PAGES
#define EVENTS_PAGES 256
#endif

BPF_RINGBUF_OUTPUT(samples, EVENTS_PAGES);

#include "dump.h"
