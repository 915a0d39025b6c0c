
L
{app="api"}
─Бо╙hello proto$
─Бо╙with md
trace_idabc