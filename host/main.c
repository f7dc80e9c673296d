/* aimc: one binary, subcommands. */
#include "commands.h"
#include <stdio.h>
#include <string.h>

#define AIMC_VERSION "0.1.0"

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"train", cmd_train, "train an AIM projector on a frozen LLaVA / BLIP-2 backbone (LM loss; checkpoints, resume, ranks)"},
    {"selfcheck", cmd_selfcheck,
     "train a tiny projector through a frozen attention block; checks gradients and loss"},
    {"tokenize", cmd_tokenize, "text -> token ids (or ids -> text) with a model folder's tokenizer.json"},
    {"preprocess", cmd_preprocess, "decode images and write the pixel_values a model's image processor gives"},
    {"shards", cmd_shards, "inspect tar shards (counts, layouts, skips) or write synthetic LAION / MMC4 shards"},
    {"export", cmd_export, "write a checkpoint's projector as a PyTorch state_dict (safetensors) + JSON"},
    {"forward", cmd_forward, "one forward pass of a LLaVA / BLIP-2 / CLIP / LLaMA / OPT folder: logits, hidden states, loss"},
    {"infer", cmd_infer, "answer a multimodal query: AIM-fused, in-context (icl) or zero-shot demonstrations"},
    {"bank", cmd_bank, "build or describe a demonstration bank (aggregated hidden states, reused by infer)"},
    {"eval", cmd_eval, "score k-shot aim / icl / zero-shot answers on a benchmark (VQA, captions, Hateful Memes)"},
};
#define NCOMMANDS (int)(sizeof commands / sizeof commands[0])

static void print_usage(FILE *f) {
    fprintf(f, "usage: aimc <command> [options]    (aimc <command> --help for its options)\n\n"
               "aimc trains and runs AIM projectors on frozen multimodal LLMs.\n\ncommands:\n");
    for (int i = 0; i < NCOMMANDS; i++) fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n  --help       this text\n  --version    print the version\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        print_usage(stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("aimc %s\n", AIMC_VERSION);
        return 0;
    }
    for (int i = 0; i < NCOMMANDS; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "aimc: error: unknown command '%s' (see 'aimc --help')\n", argv[1]);
    return 2;
}
