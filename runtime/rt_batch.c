typedef int placeholder_rt_batch_t; /* being written */
