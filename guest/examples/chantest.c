/* chantest: placeholder. */
#include <parley/guest.h>

int main(const struct parley_boot_info *bi)
{
	(void)bi;
	return 0;
}
