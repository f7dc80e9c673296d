#include "cpu.h"

/* placeholder until the family lands */
void cpu_fill_loss(backend *b) { (void)b; }
