typedef int placeholder_rt_mp_t; /* being written */
