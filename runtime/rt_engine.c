typedef int placeholder_rt_engine_t; /* being written */
