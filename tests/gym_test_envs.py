"""Gymnasium envs that misbehave on purpose, for the rollout worker tests.

Rollout workers are fresh interpreters: they import this module by the env id's
``gym_test_envs:`` prefix, so the tests put this folder on ``PYTHONPATH``.
"""

import os
import signal
import time

import gymnasium as gym
import numpy as np

FAIL_AT_STEP = 5
DOOMED_SEED = 13  # DoomedEnv's episodes reset with it kill their worker
SLOW_STEPS, SLOW_STEP_S = 200, 0.01  # SlowDoomedEnv's other episodes: 2 s each


class _Counter(gym.Env):
    """A 2-feature observation that counts steps; Discrete(2) actions; 20 steps long."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0, self.np_random.normal()], np.float32), {}

    def step(self, action):
        self.t += 1
        obs = np.array([self.t, self.np_random.normal()], np.float32)
        return obs, self.reward(action), self.t >= 20, False, {}

    def reward(self, action):
        return float(action)


class RaisingEnv(_Counter):
    def reward(self, action):
        if self.t == FAIL_AT_STEP:
            raise FloatingPointError("simulation diverged")
        return float(action)


class DoomedEnv(_Counter):
    """Kills its worker in the episodes reset with ``DOOMED_SEED``, at ``FAIL_AT_STEP``."""

    def reset(self, *, seed=None, options=None):
        self.doomed = seed == DOOMED_SEED
        return super().reset(seed=seed, options=options)

    def reward(self, action):
        if self.doomed and self.t == FAIL_AT_STEP:
            os.kill(os.getpid(), signal.SIGKILL)
        return float(action)


class SlowDoomedEnv(DoomedEnv):
    """``DoomedEnv`` whose other episodes last ``SLOW_STEPS`` steps of ``SLOW_STEP_S``."""

    def step(self, action):
        obs, reward, _, truncated, info = super().step(action)
        if not self.doomed:
            time.sleep(SLOW_STEP_S)
        return obs, reward, self.t >= SLOW_STEPS, truncated, info


class NanRewardEnv(_Counter):
    def reward(self, action):
        return float("nan") if action == 1 else 0.0


gym.register("RaisingEnv-v0", entry_point=RaisingEnv, max_episode_steps=50)
gym.register("DoomedEnv-v0", entry_point=DoomedEnv, max_episode_steps=50)
gym.register("SlowDoomedEnv-v0", entry_point=SlowDoomedEnv, max_episode_steps=SLOW_STEPS)
gym.register("NanRewardEnv-v0", entry_point=NanRewardEnv, max_episode_steps=50)
