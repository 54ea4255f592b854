"""Gymnasium envs that misbehave on purpose, for the rollout worker tests.

Rollout workers are fresh interpreters: they import this module by the env id's
``gym_test_envs:`` prefix, so the tests put this folder on ``PYTHONPATH``.
"""

import os
import signal

import gymnasium as gym
import numpy as np

FAIL_AT_STEP = 5


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


class DyingEnv(_Counter):
    def reward(self, action):
        if self.t == FAIL_AT_STEP:
            os.kill(os.getpid(), signal.SIGKILL)
        return float(action)


class NanRewardEnv(_Counter):
    def reward(self, action):
        return float("nan") if action == 1 else 0.0


gym.register("RaisingEnv-v0", entry_point=RaisingEnv, max_episode_steps=50)
gym.register("DyingEnv-v0", entry_point=DyingEnv, max_episode_steps=50)
gym.register("NanRewardEnv-v0", entry_point=NanRewardEnv, max_episode_steps=50)
