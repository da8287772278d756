typedef int placeholder_rt_actor_t; /* being written */
