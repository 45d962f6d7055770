/* Large blocks: 1 to 25 MiB, a few live at a time, each touched on every
 * page, freed and allocated again; one in four grows by realloc. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIVE 4
#define ROUNDS 150

int main(void)
{
	char *live[LIVE] = { 0 };
	size_t size[LIVE] = { 0 };
	unsigned seed = 42;
	unsigned long sum = 0;
	for (int r = 0; r < ROUNDS; r++) {
		int i = r % LIVE;
		free(live[i]);
		seed = seed * 1103515245u + 12345u;
		size[i] = ((size_t)1 << 20) + (size_t)((seed >> 4) % (24u << 20));
		live[i] = malloc(size[i]);
		for (size_t off = 0; off < size[i]; off += 4096)
			live[i][off] = (char)off;
		if ((seed & 3) == 0) {
			size_t more = size[i] + (size[i] >> 2);
			live[i] = realloc(live[i], more);
			for (size_t off = size[i]; off < more; off += 4096)
				live[i][off] = 1;
			size[i] = more;
		}
		sum += (unsigned char)live[i][size[i] / 2 & ~(size_t)4095];
	}
	for (int i = 0; i < LIVE; i++)
		free(live[i]);
	printf("%lu\n", sum);
	return 0;
}
