typedef int placeholder_rt_cache_t; /* being written */
