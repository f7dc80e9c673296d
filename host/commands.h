/* Every subcommand's entry point: argv[0] is the subcommand name. Returns the
 * process exit status. One line per command in host/main.c's table. */
#ifndef AIMC_COMMANDS_H
#define AIMC_COMMANDS_H
int cmd_selfcheck(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_preprocess(int argc, char **argv);
int cmd_shards(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_forward(int argc, char **argv);
int cmd_infer(int argc, char **argv);
int cmd_bank(int argc, char **argv);
int cmd_eval(int argc, char **argv);
#endif
