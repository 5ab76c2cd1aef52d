/* libFuzzer target: Redis URL parsing (src/store/redis.c). Any input must either parse to a
 * host and a port in range, or fail with a message that never holds the password. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/store/redis.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *url = malloc(size + 1);
    memcpy(url, data, size);
    url[size] = '\0';
    struct ibex_redis_url u;
    char err[256];
    if (ibex_redis_parse_url(url, &u, err, sizeof(err)) == 0) {
        assert(u.host[0] != '\0');
        assert(u.port > 0 && u.port <= 65535);
    } else {
        assert(err[0] != '\0');
    }
    free(url);
    return 0;
}
